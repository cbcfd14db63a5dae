import sys

from ollama_locust.simulator.cli import main

sys.exit(main())
