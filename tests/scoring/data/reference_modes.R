# Reference numbers for tests/scoring/test_modes.py: the design-based IVR - CATI
# difference of mean scores, experimental (by randomised arm) and observational (by
# the mode actually used), on the synthetic fixture modes.csv (190 respondents in 3
# strata).  R 4.2.2 and survey 4.1.1.  Run from this directory:  Rscript reference_modes.R
suppressPackageStartupMessages(library(survey))
options(digits = 15)
d <- read.csv("modes.csv")
des <- svydesign(id = ~1, strata = ~stratum, fpc = ~N, data = d)
for (by in c("arm", "mode")) {
  b <- svyby(~y, as.formula(paste0("~", by)), des, svymean, covmat = TRUE)
  # rows in sorted order: cati, ivr; the contrast is ivr - cati
  k <- svycontrast(b, c(cati = -1, ivr = 1))
  cat(by, coef(b)[["ivr"]], coef(b)[["cati"]], coef(k), SE(k), degf(des),
      confint(k, df = degf(des)), "\n")
}
