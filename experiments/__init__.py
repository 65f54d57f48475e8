"""The end-to-end experiments: paper.sh runs one; paper_report.py (python -m experiments.paper_report) reports it."""
