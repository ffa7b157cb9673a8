"""The fault and load suite (issue 16): proxies, faults, the workload and its checks."""
