"""Who can read me (issue 16, item 3): the connections whose reach covers one employee."""
