"""Dask clients for the slide stages: a scheduler address, a dask-jobqueue cluster or a local one."""

from __future__ import annotations

import contextlib
import logging

from lnmkit.pipeline._config import DaskConfig, default_workers

__all__ = ["dask_client", "jobqueue_kwargs", "jobqueue_cluster_class"]

_CLUSTER_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster"}


def jobqueue_kwargs(dask_config: DaskConfig) -> dict:
    """Keyword arguments of the dask-jobqueue cluster class, from the ``dask.jobqueue`` section.

    Unset keys are left out so that dask-jobqueue's own configuration
    (``~/.config/dask/jobqueue.yaml``) supplies them; ``jobs`` is not a cluster
    argument (it is the number of jobs passed to ``cluster.scale``).

    Parameters
    ----------
    dask_config : DaskConfig

    Returns
    -------
    dict
    """
    if dask_config.jobqueue is None:
        raise ValueError(f"dask.jobqueue: cluster {dask_config.cluster!r} needs a jobqueue section; got None")
    values = dask_config.jobqueue.model_dump(exclude={"jobs"})
    return {k: v for k, v in values.items() if v is not None and v != []}


def jobqueue_cluster_class(kind: str):
    """The dask-jobqueue class of a cluster kind (``"slurm"`` or ``"pbs"``).

    Parameters
    ----------
    kind : {"slurm", "pbs"}

    Returns
    -------
    type

    Raises
    ------
    ImportError
        If dask-jobqueue is not installed; the message gives the pip command.
    """
    try:
        import dask_jobqueue
    except ImportError:
        raise ImportError(f"dask.cluster: {kind!r} needs dask-jobqueue; install it with "
                          "`pip install 'lnmkit[hpc]'` (or `pip install dask-jobqueue`).") from None
    return getattr(dask_jobqueue, _CLUSTER_CLASSES[kind])


@contextlib.contextmanager
def dask_client(dask_config: DaskConfig, *, n_tasks=None):
    """Yield a ``dask.distributed.Client`` for the slide stages, or None to run in-process.

    ``scheduler`` (an address) wins over ``cluster``. A local cluster has
    ``n_workers`` single-threaded worker processes (default: one per CPU of the
    machine); with one worker, or one task, the work runs in this process
    instead. Clusters started here are closed on exit; a scheduler given by
    address is left running.

    Parameters
    ----------
    dask_config : DaskConfig
    n_tasks : int, optional
        Number of tasks to run (slides); a local cluster gets no more workers than that.

    Yields
    ------
    dask.distributed.Client or None
    """
    if dask_config.scheduler is not None:
        from dask.distributed import Client

        client = Client(dask_config.scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    kind = dask_config.cluster
    if kind == "none":
        yield None
        return
    if kind == "local":
        n_workers = dask_config.n_workers or default_workers()
        if n_tasks is not None:
            n_workers = min(n_workers, n_tasks)
        if n_workers <= 1:
            yield None
            return
        from dask.distributed import Client, LocalCluster

        # distributed logs every worker it stops at close as a warning; only errors are news here
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    else:
        cluster = jobqueue_cluster_class(kind)(**jobqueue_kwargs(dask_config))
        cluster.scale(jobs=dask_config.jobqueue.jobs)
        from dask.distributed import Client
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
