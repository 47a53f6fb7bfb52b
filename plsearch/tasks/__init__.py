"""plsearch's offline lm-eval task suite (YAML + utils.py), shipped as package data.

lm-eval reads this folder through a TaskManager include path (plsearch.evaluate.TASK_DIR);
configs/tasks/README.md documents how every task was built.
"""
