"""Partner sandboxes: synthetic environments a partner makes to try its apps on."""
