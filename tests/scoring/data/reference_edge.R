# Reference numbers for tests/scoring/test_edges.py: edge domains of the per-unit
# design (R 4.2.2, survey 4.1.1, Debian r-cran-survey).  Run from this directory:
#   Rscript reference_edge.R
#
# edge_units.csv: 9 respondents in strata a (N = 60) and b (N = 40); unit
#   solo  assigned to two, one rater (rated 3; the other "don't know"): SE 0 and df 0,
#         so confint(df = 0) is NaN (no interval);
#   dk    two assigned raters, "don't know" and unanswered: nobody in the domain;
#   all1  five raters, all rated 1: estimate 100, SE 0, df 3, interval [100, 100];
#   pair  two raters in one stratum: df 1;
#   mix   five raters in two strata: df 3.
suppressPackageStartupMessages(library(survey))
options(digits = 15, survey.lonely.psu = "adjust")
r <- read.csv("edge_units.csv", colClasses = "character")
pop <- read.csv("edge_units_population.csv", colClasses = c("character", "numeric"))
r$N <- pop$N[match(r$stratum, pop$stratum)]
points <- c("1" = 100, "2" = 60, "3" = 0)
r$y <- unname(points[r$rating])
r$answered <- !is.na(r$y)
for (u in sort(unique(r$unit))) {
  au <- r[r$unit == u & r$assigned == "1", ]
  des <- svydesign(id = ~1, strata = ~stratum, fpc = ~N, data = au)
  s <- subset(des, answered)
  if (nrow(s) == 0) { cat("unit", u, 0, NA, NA, NA, NA, NA, "\n"); next }
  m <- suppressWarnings(svymean(~y, s))
  ci <- suppressWarnings(confint(m, df = degf(s)))
  cat("unit", u, nrow(s), coef(m), SE(m), degf(s), ci, "\n")
}
