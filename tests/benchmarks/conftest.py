import sys
from pathlib import Path

# benchmark scripts import each other by module name (python benchmarks/ssl_uwave.py puts benchmarks/ first)
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
