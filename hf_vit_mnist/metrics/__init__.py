"""Evaluation metrics shipped as `evaluate` modules, loadable by path without the Hub."""

from pathlib import Path

CLASSIFICATION_REPORT_PATH = str(Path(__file__).with_name("classification_report.py"))
