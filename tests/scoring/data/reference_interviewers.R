# Reference numbers for tests/scoring/test_interviewers.py: interviewer effects on the
# synthetic fixture interviewers.csv (8 interviewers, 12 units, ratings on the points
# scale 100/60/0; interviewer I05 was generated to rate higher).  R 4.2.2, base stats
# (aov, lm, p.adjust) and lme4 1.1.31.  Run from this directory:
#   Rscript reference_interviewers.R
options(digits = 15)
d <- read.csv("interviewers.csv", colClasses = c("factor", "factor", "numeric"))
d$r <- d$points - ave(d$points, d$unit)           # centred on the unit's mean
a <- nlevels(d$interviewer); N <- nrow(d); m <- table(d$interviewer)
tab <- summary(aov(r ~ interviewer, data = d))[[1]]
msb <- tab[1, "Mean Sq"]; msw <- tab[2, "Mean Sq"]
m0 <- (N - sum(m^2) / N) / (a - 1)
sb <- (msb - msw) / m0
rho <- sb / (sb + msw)
cat("anova", msb, msw, m0, rho, 1 + (N / a - 1) * max(rho, 0), "\n")
fit <- summary(lm(r ~ 0 + interviewer, data = d))$coefficients
p <- fit[, 4]
cat("means", fit[, 1], "\n")
cat("se", fit[, 2], "\n")
cat("holm", p.adjust(p, "holm"), "\n")
# For comparison only (not the estimator used): REML variance components with lme4.
suppressPackageStartupMessages(library(lme4))
vc <- as.data.frame(VarCorr(lmer(r ~ 1 + (1 | interviewer), data = d, REML = TRUE)))
cat("lme4_rho", vc$vcov[1] / sum(vc$vcov), "\n")
