"""The dispatcher: leases tasks, admits them within capacity, runs them on a backend."""
