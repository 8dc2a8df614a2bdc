"""Stands for a PaddleDetection 2.7+ tree's own ppdet package: only its presence matters
(tests run this tree's scripts from outside it, so Python imports the installed ppdet)."""
