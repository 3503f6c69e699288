"""Made-up Dutch payroll data for demo environments and partner sandboxes."""
