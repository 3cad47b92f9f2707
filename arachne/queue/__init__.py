"""Redis + rq: the hand-off between crawling and matching."""
