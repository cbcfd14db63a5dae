import sys

from ollama_locust.cli import main

sys.exit(main())
