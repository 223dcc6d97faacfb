# Reference values for lnmkit.evaluation (binary) and lnmkit.models.LNMLogisticRegression
# from R: pROC (DeLong ci.auc, paired roc.test), glm / rms::lrm (calibration intercept
# and slope, maximum-likelihood logistic coefficients).
#
# Usage: Rscript evaluation_binary_reference.R INPUT_CSV OUTPUT_CSV
# INPUT_CSV is written by tests/test_evaluation_binary.py::write_input from
# scikit-survival's load_gbsg2 (German Breast Cancer Study Group 2, 686 patients):
# y = 1 when more than 3 lymph nodes are positive; tsize and lp are two scores;
# p is a fixed (not fitted) risk formula, so its calibration is not perfect.
suppressMessages({library(pROC); library(rms)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$tgrade <- factor(d$tgrade, levels = c("I", "II", "III"))
d$menostat <- factor(d$menostat, levels = c("Pre", "Post"))
d$horTh <- factor(d$horTh, levels = c("no", "yes"))
res <- list()
put <- function(name, value) res[[name]] <<- unname(value)

r1 <- roc(d$y, d$tsize, levels = c(0, 1), direction = "<", quiet = TRUE)
r2 <- roc(d$y, d$lp, levels = c(0, 1), direction = "<", quiet = TRUE)
for (nm in c("tsize", "lp")) {
  r <- if (nm == "tsize") r1 else r2
  ci <- ci.auc(r, method = "delong", conf.level = 0.95)
  put(paste0(nm, "_auc"), ci[2])
  put(paste0(nm, "_auc_lower_95"), ci[1])
  put(paste0(nm, "_auc_upper_95"), ci[3])
  put(paste0(nm, "_auc_se"), sqrt(var(r, method = "delong")))
}
t <- roc.test(r1, r2, method = "delong", paired = TRUE)
put("delong_z", t$statistic)
put("delong_p", t$p.value)

lp <- qlogis(d$p)
put("calibration_intercept_glm", coef(glm(d$y ~ offset(lp), family = binomial))[1])
put("calibration_slope_glm", coef(glm(d$y ~ lp, family = binomial))[2])
put("calibration_intercept_lrm", coef(lrm.fit(y = d$y, offset = lp))[1])
put("calibration_slope_lrm", coef(lrm(d$y ~ lp))[2])
put("brier", mean((d$p - d$y)^2))

fit <- glm(y ~ age + tsize + tgrade + estrec + progrec + menostat + horTh, family = binomial, data = d)
b <- coef(fit)
se <- sqrt(diag(vcov(fit)))
nm <- c("intercept", "age", "tsize", "tgrade[II]", "tgrade[III]", "estrec", "progrec", "menostat[Post]",
        "horTh[yes]")
for (i in seq_along(b)) {
  put(paste0("coef_", nm[i]), b[i])
  put(paste0("se_", nm[i]), se[i])
}
out <- data.frame(name = names(res), value = sprintf("%.12g", unlist(res)))
write.csv(out, args[2], row.names = FALSE, quote = FALSE)
