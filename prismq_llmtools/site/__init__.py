"""The call site: one wrapper per decorated function, one Call per invocation, and the
phase algorithm every aspect runs in."""
