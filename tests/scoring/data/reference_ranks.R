# Reference numbers for tests/scoring/test_ranks.py: rank intervals from pairwise
# t tests with Holm's adjustment (R 4.2.2, base stats: pt, p.adjust).  Run from this
# directory:  Rscript reference_ranks.R
#
# Seven units with composites x, standard errors se, degrees of freedom df and a
# covariance between units 1-2 and 3-4 (shared raters).  Units j and k are told
# apart when the two-sided p of (x_j - x_k)/sqrt(V_j + V_k - 2 C_jk) on
# min(df_j, df_k) df is under alpha = 0.05 after adjustment:
#   marginal:     Holm within each unit's m - 1 comparisons (its own rank interval);
#   simultaneous: Holm over all m(m - 1)/2 pairs (all rank intervals jointly);
#   pairwise:     no adjustment.
# Rank interval of j: [1 + #told apart and above, m - #told apart and below].
options(digits = 15)
x  <- c(88.0, 84.5, 79.0, 76.0, 71.5, 70.0, 55.0)
se <- c(2.0, 2.5, 3.0, 1.5, 2.0, 4.0, 3.0)
df <- c(40, 35, 60, 80, 25, 30, 45)
C <- diag(se^2)
C[1, 2] <- C[2, 1] <- 2.0
C[3, 4] <- C[4, 3] <- -1.0
m <- length(x)
P <- matrix(1, m, m)
for (j in 1:m) for (k in 1:m) if (j != k) {
  v <- C[j, j] + C[k, k] - 2 * C[j, k]
  P[j, k] <- 2 * pt(-abs(x[j] - x[k]) / sqrt(v), min(df[j], df[k]))
}
interval <- function(told) {
  sapply(1:m, function(j) c(1 + sum(told[j, ] & x > x[j]), m - sum(told[j, ] & x < x[j])))
}
alpha <- 0.05
pairwise <- P < alpha & row(P) != col(P)
marginal <- matrix(FALSE, m, m)
for (j in 1:m) {
  others <- setdiff(1:m, j)
  marginal[j, others] <- p.adjust(P[j, others], "holm") < alpha
}
up <- which(upper.tri(P), arr.ind = TRUE)
adj <- p.adjust(P[up], "holm")
simultaneous <- matrix(FALSE, m, m)
simultaneous[up] <- adj < alpha
simultaneous <- simultaneous | t(simultaneous)
for (name in c("pairwise", "marginal", "simultaneous")) {
  r <- interval(get(name))
  cat(name, "low", r[1, ], "\n")
  cat(name, "high", r[2, ], "\n")
}
cat("p12", P[1, 2], "p34", P[3, 4], "\n")
