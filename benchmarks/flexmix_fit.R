# Fit a Gaussian mixture of linear experts with a multinomial-logit (softmax) gate
# with flexmix, for benchmarks/bench_em.py.
#
# Usage:
#   Rscript benchmarks/flexmix_fit.R DATA.csv K TOL ITER_MAX REPS OUT.json
#
# DATA.csv has the columns y, x1..xd and c1..cK: the initial posterior matrix
# (the same smoothed k-means labels moestats starts from), passed as `cluster =`.
# Only the flexmix() call is timed (system.time, elapsed), so R start-up, package
# loading and CSV reading are excluded.  With REPS > 1 the fit is repeated and every
# elapsed time is reported (the fits are deterministic given `cluster`).
#
# flexmix's loop (FLXfit): per iteration a gate M-step (nnet BFGS from zero, maxit 100),
# the expert M-step (lm.wfit), then the E-step and the log-likelihood; it stops when
# |ll - ll_old| / (|ll| + 0.1) < tolerance.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 6) {
  stop("usage: Rscript flexmix_fit.R DATA.csv K TOL ITER_MAX REPS OUT.json")
}
data_path <- args[1]
k <- as.integer(args[2])
tol <- as.numeric(args[3])
iter_max <- as.integer(args[4])
reps <- as.integer(args[5])
out_path <- args[6]

suppressPackageStartupMessages(library(flexmix))

dat <- read.csv(data_path)
xcols <- grep("^x[0-9]+$", names(dat), value = TRUE)
ccols <- paste0("c", seq_len(k))
cluster <- as.matrix(dat[, ccols])
dat <- dat[, c("y", xcols)]
rhs <- paste(xcols, collapse = " + ")
f_model <- as.formula(paste("y ~", rhs))
f_gate <- as.formula(paste("~", rhs))

times <- numeric(0)
fit <- NULL
for (r in seq_len(reps)) {
  set.seed(1)  # flexmix draws nothing when `cluster` is given; kept for safety
  tm <- system.time(
    fit <- flexmix(f_model, data = dat, k = k, cluster = cluster,
                   model = FLXMRglm(family = "gaussian"),
                   concomitant = FLXPmultinom(f_gate),
                   control = list(minprior = 0, tolerance = tol, iter.max = iter_max))
  )
  times <- c(times, unname(tm["elapsed"]))
}

# parameters, so that Python can re-evaluate the likelihood with moestats
comp <- parameters(fit)                  # rows: (Intercept), x1..xd, sigma; cols: Comp.1..k
k_fit <- ncol(comp)
gate <- fit@concomitant@coef             # rows: (Intercept), x1..xd; column 1 is the reference (0)

num <- function(v) {
  v <- as.numeric(v)
  s <- ifelse(is.finite(v), formatC(v, digits = 17, format = "g"), "null")
  paste0("[", paste(gsub(" ", "", s), collapse = ", "), "]")
}
mat <- function(m) paste0("[", paste(apply(as.matrix(m), 2, num), collapse = ", "), "]")

json <- paste0(
  "{\n",
  '  "elapsed_s": ', num(times), ",\n",
  '  "iter": ', fit@iter, ",\n",
  '  "converged": ', tolower(as.character(fit@converged)), ",\n",
  '  "logLik": ', formatC(as.numeric(logLik(fit)), digits = 17, format = "g"), ",\n",
  '  "k_fitted": ', k_fit, ",\n",
  '  "components_by_column": ', mat(comp), ",\n",
  '  "component_rows": ["', paste(rownames(comp), collapse = '", "'), '"],\n',
  '  "gate_coef_by_column": ', mat(gate), ",\n",
  '  "gate_rows": ["', paste(rownames(gate), collapse = '", "'), '"],\n',
  '  "flexmix_version": "', as.character(packageVersion("flexmix")), '",\n',
  '  "r_version": "', R.version.string, '"\n',
  "}\n")
writeLines(json, out_path)
