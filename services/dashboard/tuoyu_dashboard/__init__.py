"""Dashboard: read models projected from every service's events, for officers' dashboards."""
