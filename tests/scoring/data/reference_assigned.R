# Reference numbers for tests/scoring/test_assigned.py: units rated by random
# subsamples (each respondent is assigned 2 of the m_h units of their group,
# m = 3 residents, 6 deputies, 4 business), computed with R and the survey
# package (survey 4.1.1).  Run from this directory:  Rscript reference_assigned.R
#
# assigned_units.csv: one row per (respondent, unit) the respondent was
# assigned (assigned = 1) or answered without being assigned (assigned = 0,
# not scored); rating "" = assigned but not answered, "0" = don't know.
# Default scale 1 -> 100, 2 -> 60, 3 -> 0, satisfied = 1 or 2.
#
# The design of unit u: the respondents assigned u, stratified by stratum,
# fpc = N_h, so the weight is N_h / n_hu (n_hu = respondents of stratum h
# assigned u); the unit's score is svymean on the subset that answered it.
# Unit sfj has a single business respondent: survey.lonely.psu = "adjust".
suppressPackageStartupMessages(library(survey))
options(digits = 15, survey.lonely.psu = "adjust")

r <- read.csv("assigned_units.csv", colClasses = "character")
pop <- read.csv("assigned_units_population.csv", colClasses = c("character", "numeric"))
r$N <- pop$N[match(r$stratum, pop$stratum)]
points <- c("1" = 100, "2" = 60, "3" = 0)
r$y <- unname(points[r$rating])                      # NA: don't know or not answered
r$sat <- as.numeric(r$rating %in% c("1", "2"))
r$answered <- !is.na(r$y)
a <- r[r$assigned == "1", ]
units <- sort(unique(a$unit))
for (u in units) {
  au <- a[a$unit == u, ]
  des <- svydesign(id = ~1, strata = ~stratum, fpc = ~N, data = au)
  s <- subset(des, answered)
  m <- suppressWarnings(svymean(~y, s))
  p <- suppressWarnings(svyciprop(~I(sat == 1), s, method = "beta"))
  cat("unit", u, nrow(s), coef(m), SE(m), degf(s), confint(m, df = degf(s)),
      coef(p), SE(p), attr(p, "ci"), "\n")
}

# The old weighting (every respondent N_h / n_h in every unit, n_h = all
# respondents of stratum h): the estimates differ.
resp <- unique(r[, c("respondent_id", "stratum", "N")])
n_h <- table(resp$stratum)
for (u in units) {
  au <- a[a$unit == u & a$answered, ]
  w <- au$N / as.numeric(n_h[au$stratum])
  cat("old weighting", u, sum(w * au$y) / sum(w), "\n")
}
