"""The data-access log (issue 16, item 2): which apps read or changed an employee's data."""
