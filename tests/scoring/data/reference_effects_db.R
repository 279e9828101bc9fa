# Reference numbers for tests/scoring/test_effects_db.py: the design-based IVR - CATI
# difference of the respondents' mean points per track, by randomised arm (experimental)
# and by the mode used (observational), on effects_db.csv (the 30 respondents of
# experiment_field, 2 strata).  A respondent with no rating in a track ("NA") stays in
# the design but is in neither domain.  R 4.2.2 and survey 4.1.1.
# Run from this directory:  Rscript reference_effects_db.R
suppressPackageStartupMessages(library(survey))
options(digits = 15)
d <- read.csv("effects_db.csv")
for (track in c("overall", "departments", "windows")) {
  for (by in c("arm", "mode")) {
    d$y <- ifelse(is.na(d[[track]]), 0, d[[track]])
    d$g <- ifelse(is.na(d[[track]]), "none", d[[by]])
    des <- svydesign(id = ~1, strata = ~stratum, fpc = ~N, data = d)
    b <- svyby(~y, ~g, des, svymean, covmat = TRUE)
    k <- svycontrast(b, c(cati = -1, ivr = 1, none = 0)[rownames(coef(b) |> as.matrix())])
    cat(track, by, coef(b)[["ivr"]], coef(b)[["cati"]], coef(k), SE(k), degf(des),
        confint(k, df = degf(des)), "\n")
  }
}
