# Fit a mixture of k Gaussian linear regressions with constant weights (no concomitant
# model) with flexmix and mixtools, free and equal variances, for
# benchmarks/bench_real_data.py (its "constant" table).
#
# Usage:
#   Rscript benchmarks/regmix_fit.R DATA.csv K OUT.json USE_MIXTOOLS
#
# DATA.csv has the columns x and y (one covariate). USE_MIXTOOLS is 1 or 0.
#
# flexmix: stepFlexmix(y ~ x, k, nrep = 10) (10 random-partition starts, the best kept),
#   free variances:  model = FLXMRglm(family = "gaussian");
#   equal variances: model = FLXMRglmfix(family = "gaussian", varFix = TRUE)
#                    (flexmix's equal-variance Gaussian regression driver);
#   each with minprior = 0 (no component dropped) and (a) flexmix's default control
#   (tolerance 1e-6, iter.max 200), (b) a tight control (tolerance 1e-10, iter.max 5000);
#   set.seed(1) before each stepFlexmix call.
# mixtools: regmixEM(y, x, k, arbvar = TRUE / FALSE, epsilon = 1e-8, maxit = 2000) from its
#   own random start, seeds set.seed(1) .. set.seed(10) (one per run), the best kept.
#   regmixEM restarts itself from a new random start on numerical trouble; the number of
#   such restarts is reported ("restarts").
# Only the fitting calls are timed (system.time, elapsed): R start-up, package loading and
# CSV reading are excluded. The mixtools time is that of all 10 runs together.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 4) {
  stop("usage: Rscript regmix_fit.R DATA.csv K OUT.json USE_MIXTOOLS")
}
data_path <- args[1]
k <- as.integer(args[2])
out_path <- args[3]
use_mixtools <- args[4] == "1"

suppressPackageStartupMessages(library(flexmix))
d <- read.csv(data_path)              # columns x, y

fmt <- function(v) formatC(v, digits = 17, format = "g")
num <- function(v) {
  v <- as.numeric(v)
  s <- ifelse(is.finite(v), fmt(v), "null")
  paste0("[", paste(gsub(" ", "", s), collapse = ", "), "]")
}
mat <- function(m) paste0("[", paste(apply(as.matrix(m), 2, num), collapse = ", "), "]")

controls <- list(default = list(minprior = 0),
                 tight = list(minprior = 0, tolerance = 1e-10, iter.max = 5000))
models <- list(free = function() FLXMRglm(family = "gaussian"),
               equal = function() FLXMRglmfix(family = "gaussian", varFix = TRUE))

fx <- function(variances, control) {
  set.seed(1)
  tm <- system.time(m <- stepFlexmix(y ~ x, data = d, k = k, nrep = 10,
                                     model = models[[variances]](),
                                     control = controls[[control]], verbose = FALSE))
  # parameters(m): rows coef.(Intercept), coef.x, sigma; columns Comp.1..k
  paste0('"flexmix_', variances, "_", control, '": {"elapsed_s": ', unname(tm["elapsed"]),
         ', "logLik": ', fmt(as.numeric(logLik(m))),
         ', "k_fitted": ', m@k, ', "iter": ', m@iter,
         ', "converged": ', tolower(as.character(m@converged)),
         ', "components_by_column": ', mat(parameters(m)),
         ', "prior": ', num(prior(m)), '}')
}
parts <- c(fx("free", "default"), fx("free", "tight"),
           fx("equal", "default"), fx("equal", "tight"))

if (use_mixtools && requireNamespace("mixtools", quietly = TRUE)) {
  suppressPackageStartupMessages(library(mixtools))
  mx <- function(arbvar) {
    best <- NULL; lls <- numeric(0); restarts <- 0; iters <- numeric(0)
    tm <- system.time(for (r in 1:10) {
      set.seed(r)
      m <- NULL
      invisible(capture.output(m <- tryCatch(
        suppressWarnings(regmixEM(d$y, d$x, k = k, arbvar = arbvar, epsilon = 1e-8,
                                  maxit = 2000)),
        error = function(e) NULL)))
      if (is.null(m)) { lls <- c(lls, NA); iters <- c(iters, NA); next }
      lls <- c(lls, m$loglik)
      iters <- c(iters, length(m$all.loglik))
      restarts <- restarts + m$restarts
      if (is.null(best) || m$loglik > best$loglik) best <- m
    })
    label <- if (arbvar) "mixtools_free" else "mixtools_equal"
    # best$beta: rows beta.0 (intercept), beta.1 (slope); columns comp.1..k
    paste0('"', label, '": {"elapsed_s": ', unname(tm["elapsed"]),
           ', "logLik": ', fmt(best$loglik),
           ', "start_logLiks": ', num(lls), ', "iterations": ', num(iters),
           ', "restarts": ', restarts,
           ', "beta": ', mat(best$beta), ', "sigma": ', num(best$sigma),
           ', "lambda": ', num(best$lambda), '}')
  }
  parts <- c(parts, mx(TRUE), mx(FALSE),
             paste0('"mixtools_version": "', as.character(packageVersion("mixtools")), '"'))
}
parts <- c(parts, paste0('"flexmix_version": "', as.character(packageVersion("flexmix")), '"'),
           paste0('"r_version": "', R.version.string, '"'))
writeLines(paste0("{", paste(parts, collapse = ",\n"), "}"), out_path)
