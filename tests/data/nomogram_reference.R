# Reference values for lnmkit.nomogram from R rms (lrm / cph + datadist + nomogram,
# validate, calibrate) and Hmisc (rcspline.eval knots, pretty).
#
# Usage: Rscript nomogram_reference.R INPUT_DIR OUTPUT_DIR
# INPUT_DIR holds nomogram_input_<case>.csv, written from package-shipped public
# datasets by tests/test_nomogram_r.py::write_inputs (scikit-survival load_whas500 and
# load_gbsg2, lifelines load_rossi). Every output file is named nomogram_<case>_<what>.csv.
suppressMessages(library(rms))
args <- commandArgs(trailingOnly = TRUE)
indir <- args[1]
outdir <- args[2]
# "quick": skip the B = 200 runs and the converged-refit reruns (the live comparison in
# the test suite checks that a fresh run reproduces the stored files it writes)
quick <- length(args) > 2 && args[3] == "quick"
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)
SEED <- 20261201
B_REPLAY <- 40   # validate/calibrate runs whose bootstrap index matrix is exported
B_FULL <- 200    # validate runs compared with lnmkit's own resampling

out <- function(df, case, what) {
  write.csv(df, file.path(outdir, sprintf("nomogram_%s_%s.csv", case, what)),
            row.names = FALSE)
}

out_gz <- function(df, case, what) {
  con <- gzfile(file.path(outdir, sprintf("nomogram_%s_%s.csv.gz", case, what)), "w")
  write.csv(df, con, row.names = FALSE)
  close(con)
}

boot_matrix <- function(n, B) {
  # predab.resample draws sample(n, replace = TRUE) once per resample and nothing
  # else from the RNG, so the same seed replays validate's and calibrate's samples.
  set.seed(SEED)
  sapply(seq_len(B), function(i) sample(n, replace = TRUE))
}

with_converged_cox <- function(code) {
  ns <- asNamespace("rms")
  orig_fit <- get("coxphFit", envir = ns)
  orig_cph <- get("cph", envir = ns)
  patched_fit <- function(..., iter.max, eps) {
    orig_fit(..., iter.max = if (iter.max == 0) 0 else 50, eps = 1e-8)
  }
  patched_cph <- orig_cph
  formals(patched_cph)$eps <- 1e-8
  formals(patched_cph)$iter.max <- 50
  assignInNamespace("coxphFit", patched_fit, "rms")
  assignInNamespace("cph", patched_cph, "rms")
  on.exit({
    assignInNamespace("coxphFit", orig_fit, "rms")
    assignInNamespace("cph", orig_cph, "rms")
  })
  code()
}

validate_frame <- function(v) {
  m <- unclass(v)
  data.frame(index = rownames(m), index.orig = m[, "index.orig"],
             training = m[, "training"], test = m[, "test"],
             optimism = m[, "optimism"], index.corrected = m[, "index.corrected"],
             n = m[, "n"])
}

nomogram_frames <- function(nom, case, funlabels) {
  info <- attr(nom, "info")
  axes <- NULL
  for (nm in names(nom)) {
    a <- nom[[nm]]
    if (nm == "total.points") {
      axes <- rbind(axes, data.frame(axis = nm, value = as.character(a$x), points = a$x))
    } else if (nm == "lp" || nm %in% funlabels) {
      axes <- rbind(axes, data.frame(axis = nm, value = format(a$x.real, digits = 15),
                                     points = a$x))
    } else {
      vals <- a[[nm]]
      axes <- rbind(axes, data.frame(axis = nm, value = as.character(vals), points = a$points))
    }
  }
  out(axes, case, "axes")
  R <- info$R
  out(data.frame(variable = colnames(R), R1 = R[1, ], R2 = R[2, ]), case, "ranges")
  out(data.frame(sc = info$sc, Intercept = info$Intercept), case, "scale")
  info
}

row_points <- function(fit, d, info, preds) {
  xx <- predict(fit, newdata = d, type = "terms", center.terms = FALSE)
  R <- info$R
  pts <- sapply(colnames(R), function(v) (xx[, v] - R[1, v]) * info$sc)
  res <- data.frame(row = seq_len(nrow(d)), pts)
  res$total_points <- rowSums(pts)
  res$lp <- fit$linear.predictors
  res <- cbind(res, preds)
  res[] <- lapply(res, signif, digits = 10)
  res
}

knot_frame <- function(fit) {
  parms <- fit$Design$parms
  k <- NULL
  for (v in names(parms)) {
    if (fit$Design$assume[match(v, fit$Design$name)] == "rcspline") {
      k <- rbind(k, data.frame(variable = v, knot = seq_along(parms[[v]]), value = parms[[v]]))
    }
  }
  k
}

# ---- lrm: WHAS500, death at last follow-up ~ rcs(age, 4) + gender + hr + bmi ---------------
case <- "lrm_whas500"
d <- read.csv(file.path(indir, "nomogram_input_whas500.csv"))
d$gender <- factor(d$gender)
d$chf <- factor(d$chf)
dd <- datadist(d); options(datadist = "dd")
f <- lrm(fstat ~ rcs(age, 4) + gender + hr + bmi + chf, data = d, x = TRUE, y = TRUE)
out(data.frame(name = names(coef(f)), value = unname(coef(f))), case, "coef")
out(knot_frame(f), case, "knots")
nom <- nomogram(f, fun = plogis, funlabel = "P")
info <- nomogram_frames(nom, case, "P")
out(row_points(f, d, info, data.frame(prob = plogis(f$linear.predictors))), case, "rows")
idx <- boot_matrix(nrow(d), B_REPLAY)
out_gz(as.data.frame(idx), case, "boot")
set.seed(SEED)
out(validate_frame(validate(f, B = B_REPLAY)), case, "validate_replay")
set.seed(SEED)
cal <- calibrate(f, B = B_REPLAY)
cm <- unclass(cal)
out(data.frame(predy = cm[, "predy"], calibrated.orig = cm[, "calibrated.orig"],
               calibrated.corrected = cm[, "calibrated.corrected"],
               optimism = cm[, "optimism"]), case, "calibrate_replay")
if (!quick) {
  set.seed(SEED + 1)
  out(validate_frame(validate(f, B = B_FULL)), case, "validate_full")
}

# ---- cph: GBSG2, recurrence-free survival ~ rcs(tsize, 4) + age + tgrade + horTh + pnodes ---
for (cs in list(
  list(case = "cph_gbsg2", file = "nomogram_input_gbsg2.csv", times = c(1095, 1825),
       formula = Surv(time, cens) ~ rcs(tsize, 4) + age + tgrade + horTh + pnodes,
       factors = c("tgrade", "horTh")),
  list(case = "cph_rossi", file = "nomogram_input_rossi.csv", times = c(26, 52),
       formula = Surv(week, arrest) ~ rcs(age, 3) + fin + prio + wexp,
       factors = c("fin", "wexp")))) {
  case <- cs$case
  d <- read.csv(file.path(indir, cs$file))
  for (v in cs$factors) d[[v]] <- factor(d[[v]])
  dd <- datadist(d); options(datadist = "dd")
  u <- max(cs$times)
  # eps: cph stops Newton-Raphson when the log-likelihood changes by less than
  # eps (relative; default 1e-4), which can leave a spline coefficient 0.5% short
  # of the maximum. The reference fit is converged; bootstrap refits keep
  # validate.cph's own eps = 1e-4.
  f <- cph(cs$formula, data = d, x = TRUE, y = TRUE, surv = TRUE, time.inc = u, eps = 1e-8)
  out(data.frame(name = names(coef(f)), value = unname(coef(f))), case, "coef")
  out(knot_frame(f), case, "knots")
  out(data.frame(center = f$center, loglik0 = f$loglik[1], loglik = f$loglik[2]), case, "fit")
  S <- Survival(f)
  labels <- sprintf("S(%g)", cs$times)
  funs <- lapply(cs$times, function(t) { force(t); function(lp) S(t, lp) })
  nom <- nomogram(f, fun = funs, funlabel = labels)
  info <- nomogram_frames(nom, case, labels)
  preds <- as.data.frame(sapply(cs$times, function(t) S(t, f$linear.predictors)))
  names(preds) <- sprintf("S_%g", cs$times)
  out(row_points(f, d, info, preds), case, "rows")
  idx <- boot_matrix(nrow(d), B_REPLAY)
  out_gz(as.data.frame(idx), case, "boot")
  set.seed(SEED)
  out(validate_frame(validate(f, B = B_REPLAY)), case, "validate_replay")
  set.seed(SEED)
  cal <- calibrate(f, cmethod = "KM", u = u, m = 150, B = B_REPLAY)
  cm <- unclass(cal)
  out(data.frame(mean.predicted = cm[, "mean.predicted"], KM = cm[, "KM"],
                 KM.corrected = cm[, "KM.corrected"], optimism = cm[, "mean.optimism"]),
      case, "calibrate_replay")
  if (!quick) {
    set.seed(SEED + 1)
    out(validate_frame(validate(f, B = B_FULL)), case, "validate_full")
  }
  # validate.cph refits with eps = 1e-4 and at most 10 iterations; on some samples
  # Newton-Raphson stops after one step far from the maximum (the "Loglik converged
  # before variable" warning). The same rms code with converged refits:
  if (!quick) with_converged_cox(function() {
    set.seed(SEED)
    out(validate_frame(validate(f, B = B_REPLAY)), case, "validate_replay_converged")
    set.seed(SEED)
    cal <- calibrate(f, cmethod = "KM", u = u, m = 150, B = B_REPLAY)
    cm <- unclass(cal)
    out(data.frame(mean.predicted = cm[, "mean.predicted"], KM = cm[, "KM"],
                   KM.corrected = cm[, "KM.corrected"], optimism = cm[, "mean.optimism"]),
        case, "calibrate_replay_converged")
  })
}

# ---- Hmisc knot placement and R's pretty() on a few columns ----------------------------------
d <- read.csv(file.path(indir, "nomogram_input_whas500.csv"))
g <- read.csv(file.path(indir, "nomogram_input_gbsg2.csv"))
kn <- NULL
for (spec in list(list("whas500", d, "age"), list("whas500", d, "bmi"), list("whas500", d, "hr"),
                  list("gbsg2", g, "tsize"), list("gbsg2", g, "pnodes"), list("gbsg2", g, "progrec"))) {
  x <- spec[[2]][[spec[[3]]]]
  for (n in c(60, 99, length(x))) {
    for (nk in 3:7) {
      k <- rcspline.eval(x[seq_len(n)], nk = nk, knots.only = TRUE)
      kn <- rbind(kn, data.frame(dataset = spec[[1]], variable = spec[[3]], n = n, nk = nk,
                                 knot = seq_along(k), value = k))
    }
  }
}
write.csv(kn, file.path(outdir, "nomogram_knots.csv"), row.names = FALSE)
pr <- NULL
for (r in list(c(30, 104), c(0.05, 0.93), c(-3.2, 2.71), c(0, 178), c(13, 27), c(1, 51),
               c(-0.0123, 0.0456), c(0, 100), c(17, 80), c(0.2, 0.21))) {
  p <- pretty(r, n = 10)
  pr <- rbind(pr, data.frame(lo = r[1], hi = r[2], value = p))
}
write.csv(pr, file.path(outdir, "nomogram_pretty.csv"), row.names = FALSE)
