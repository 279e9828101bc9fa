# Reference numbers for tests/scoring, computed with R and the survey package
# (survey 4.1.1).  Run from this directory:  Rscript reference.R
# It writes apistrat.csv (R survey's data set, trimmed to the columns the
# tests use) and prints the numbers embedded in tests/scoring/test_*.py.
suppressPackageStartupMessages(library(survey))
options(digits = 15)

data(api, package = "survey")
write.csv(apistrat[, c("cds", "stype", "snum", "api00", "api99", "sch.wide", "pw", "fpc")],
          "apistrat.csv", row.names = FALSE)
dstrat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat)
m <- svymean(~api00, dstrat)
cat("apistrat api00", coef(m), SE(m), degf(dstrat), confint(m, df = degf(dstrat)), "\n")
p <- svyciprop(~I(sch.wide == "Yes"), dstrat, method = "beta")
cat("apistrat sch.wide beta", coef(p), attr(p, "ci"), "\n")
p <- svyciprop(~I(sch.wide == "Yes"), dstrat, method = "logit")
cat("apistrat sch.wide logit", coef(p), attr(p, "ci"), "\n")
sub <- subset(dstrat, api99 > 650)
m <- svymean(~api00, sub)
cat("apistrat api00 | api99>650", coef(m), SE(m), degf(sub), confint(m, df = degf(sub)), "\n")
p <- svyciprop(~I(sch.wide == "Yes"), sub, method = "beta")
cat("apistrat sch.wide | api99>650 beta", coef(p), attr(p, "ci"), "\n")

# Small multi-unit fixture: units_small.csv / units_small_population.csv,
# default scale 1 -> 100, 2 -> 60, 3 -> 0, 0 outside the domain.
r <- read.csv("units_small.csv", colClasses = "character")
pop <- read.csv("units_small_population.csv", colClasses = c("character", "numeric"))
resp <- unique(r[, c("respondent_id", "stratum")])
resp$N <- pop$N[match(resp$stratum, pop$stratum)]
resp$num <- as.integer(sub("R", "", resp$respondent_id))
resp$group <- ifelse(resp$num %% 2 == 0, "g1", "g2")
resp$town <- c("t1", "t2", "t3")[resp$num %% 3 + 1]
points <- c("1" = 100, "2" = 60, "3" = 0)
units <- sort(unique(r$unit))
for (u in units) {
  ru <- r[r$unit == u, ]
  k <- ru$rating[match(resp$respondent_id, ru$respondent_id)]
  resp[[paste0("y_", u)]] <- unname(points[k])               # NA outside the domain
  resp[[paste0("s_", u)]] <- ifelse(k %in% c("1", "2"), 1, 0)
  resp[[paste0("d_", u)]] <- as.numeric(!is.na(resp[[paste0("y_", u)]]))
  resp[[paste0("a_", u)]] <- ifelse(is.na(resp[[paste0("y_", u)]]), 0, resp[[paste0("y_", u)]])
}
des <- svydesign(id = ~1, strata = ~stratum, fpc = ~N, data = resp)
for (u in units) {
  s <- subset(des, !is.na(get(paste0("y_", u))))
  m <- svymean(as.formula(paste0("~y_", u)), s)
  p <- svyciprop(as.formula(paste0("~I(s_", u, " == 1)")), s, method = "beta")
  q <- svyciprop(as.formula(paste0("~I(s_", u, " == 1)")), s, method = "logit")
  cat("unit", u, nrow(s), coef(m), SE(m), degf(s), confint(m, df = degf(s)),
      coef(p), attr(p, "ci"), attr(q, "ci"), "\n")
}
rat <- svyratio(~a_U1 + a_U2, ~d_U1 + d_U2, des, covmat = TRUE)
cat("cov U1 U2", vcov(rat)[1, 4], "\n")
cal <- calibrate(des, ~group + town, population = c(`(Intercept)` = 1000, groupg2 = 400,
                 townt2 = 300, townt3 = 400), calfun = "raking", epsilon = 1e-13, maxit = 200)
m <- svymean(~a_U1, subset(cal, d_U1 == 1))
cat("raked U1", coef(m), SE(m), "\n")
cat("raked weights R001..R003", weights(cal)[1:3], "\n")
ps <- postStratify(des, ~town, data.frame(town = c("t1", "t2", "t3"), Freq = c(300, 300, 400)))
m <- svymean(~a_U2, subset(ps, d_U2 == 1))
cat("poststratified U2", coef(m), SE(m), "\n")
nofpc <- svydesign(id = ~1, strata = ~stratum, data = resp, weights = ~I(N / table(stratum)[stratum]))
m <- svymean(~y_U3, subset(nofpc, !is.na(y_U3)))
cat("no fpc U3", coef(m), SE(m), "\n")
