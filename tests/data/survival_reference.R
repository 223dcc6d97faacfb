# Reference values for tests/test_survival_against_R.py, computed with R's survival and
# riskRegression packages on public datasets shipped by scikit-survival and lifelines.
#
# Usage: Rscript survival_reference.R DATA_DIR OUT_CSV
#   DATA_DIR holds the CSVs written by tests/test_survival_against_R.py::export_datasets
#   (rossi from lifelines, gbsg2 and veterans from scikit-survival); OUT_CSV receives one
#   row per number: dataset, analysis, key, value.
suppressPackageStartupMessages({
  library(survival)
  library(riskRegression)
})
args <- commandArgs(trailingOnly = TRUE)
data_dir <- args[1]
out_csv <- args[2]
rows <- list()
put <- function(dataset, analysis, key, value) {
  rows[[length(rows) + 1]] <<- data.frame(dataset = dataset, analysis = analysis, key = key,
                                          value = sprintf("%.12g", value), stringsAsFactors = FALSE)
}
cox_rows <- function(name, fit) {
  b <- coef(fit)
  se <- sqrt(diag(vcov(fit)))
  for (k in names(b)) {
    put(name, "coef", k, b[[k]])
    put(name, "se", k, se[[k]])
  }
  put(name, "loglik", "model", fit$loglik[2])
  z <- cox.zph(fit, transform = "km")
  for (k in rownames(z$table)) put(name, "zph_chisq", k, z$table[k, "chisq"])
}

# rossi (lifelines.datasets.load_rossi): numeric terms only
rossi <- read.csv(file.path(data_dir, "survival_rossi.csv"))
fit <- coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = rossi, ties = "efron")
cox_rows("rossi", fit)

# veterans (sksurv.datasets.load_veterans_lung_cancer): factor with four levels
vet <- read.csv(file.path(data_dir, "survival_veterans.csv"))
vet$Celltype <- factor(vet$Celltype, levels = c("adeno", "large", "smallcell", "squamous"))
vet$Prior_therapy <- factor(vet$Prior_therapy, levels = c("no", "yes"))
vet$Treatment <- factor(vet$Treatment, levels = c("standard", "test"))
fit <- coxph(Surv(time, event) ~ Age_in_years + Celltype + Karnofsky_score + Months_from_Diagnosis +
               Prior_therapy + Treatment, data = vet, ties = "efron")
cox_rows("veterans", fit)
lp <- predict(fit, type = "lp")
put("veterans", "harrell", "c", concordance(Surv(time, event) ~ lp, data = vet, reverse = TRUE)$concordance)

# gbsg2 (sksurv.datasets.load_gbsg2): factors, ties in days; the metrics
g <- read.csv(file.path(data_dir, "survival_gbsg2.csv"))
g$horTh <- factor(g$horTh, levels = c("no", "yes"))
g$menostat <- factor(g$menostat, levels = c("Pre", "Post"))
g$tgrade <- factor(g$tgrade, levels = c("I", "II", "III"))
fit <- coxph(Surv(time, event) ~ age + estrec + horTh + menostat + pnodes + progrec + tgrade + tsize,
             data = g, ties = "efron")
cox_rows("gbsg2", fit)
lp <- predict(fit, type = "lp")
g$lp <- lp
put("gbsg2", "harrell", "c", concordance(Surv(time, event) ~ lp, data = g, reverse = TRUE)$concordance)
for (tau in c(1000, 2000)) {
  put("gbsg2", "uno", sprintf("tau=%g", tau),
      concordance(Surv(time, event) ~ lp, data = g, reverse = TRUE, timewt = "n/G2", ymax = tau)$concordance)
}
times <- c(365, 730, 1095, 1460, 1825)
# Breslow-type baseline (ctype = 1): the estimate lifelines and lnmkit use
sf <- survfit(fit, newdata = g, ctype = 1, stype = 2)
surv <- t(summary(sf, times = times, extend = TRUE)$surv)
surv_all <- surv
for (i in 1:10) for (j in seq_along(times)) put("gbsg2", "survival", sprintf("row=%d;time=%g", i - 1, times[j]), surv[i, j])
risk <- 1 - surv
sc <- Score(list(cox = risk), formula = Surv(time, event) ~ 1, data = g, times = times,
            metrics = c("auc", "brier"), cens.model = "km", conf.int = FALSE, split.method = "none",
            null.model = TRUE)
auc <- as.data.frame(sc$AUC$score)
for (j in seq_len(nrow(auc))) put("gbsg2", "auc", sprintf("time=%g", auc$times[j]), auc$AUC[j])
br <- as.data.frame(sc$Brier$score)
for (j in seq_len(nrow(br))) {
  put("gbsg2", if (br$model[j] == "cox") "brier" else "brier_null", sprintf("time=%g", br$times[j]), br$Brier[j])
}
# calibration at 5 years (Austin, Harrell & van Klaveren 2020): slope on log(-log S(t)),
# smooth observed risk from a Cox model on a 3-knot restricted cubic spline of it
s5 <- surv_all[, 5]
cll <- log(-log(s5))
put("gbsg2", "calibration", "slope", coef(coxph(Surv(time, event) ~ cll, data = g)))
basis <- Hmisc::rcspline.eval(cll, knots = quantile(cll, c(0.1, 0.5, 0.9)), inclx = TRUE)
g$b1 <- basis[, 1]
g$b2 <- basis[, 2]
cf <- coxph(Surv(time, event) ~ b1 + b2, data = g)
obs <- 1 - summary(survfit(cf, newdata = g, ctype = 1, stype = 2), times = 1825)$surv[1, ]
err <- abs((1 - s5) - obs)
put("gbsg2", "calibration", "ici", mean(err))
put("gbsg2", "calibration", "e50", median(err))
put("gbsg2", "calibration", "e90", quantile(err, 0.9, type = 7))
# log-rank test across tumour grades
lr <- survdiff(Surv(time, event) ~ tgrade, data = g)
put("gbsg2", "logrank", "chisq", lr$chisq)

out <- do.call(rbind, rows)
write.csv(out, out_csv, row.names = FALSE, quote = TRUE)
cat("R", R.version$major, R.version$minor, "survival", as.character(packageVersion("survival")),
    "riskRegression", as.character(packageVersion("riskRegression")), "\n")
