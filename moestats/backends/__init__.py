"""Array backends of the likelihood kernels.

Only the NumPy reference kernels exist in this version (:mod:`.numpy_kernels`);
the Numba and CuPy backends are planned (issue 5).
"""
