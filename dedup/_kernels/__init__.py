"""Low-level Numba kernels (hashing, etc.); imports only numpy, numba and math."""
