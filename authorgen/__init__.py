"""authorgen: write like an author.

Fetch an author's public-domain works, train a recurrent network on them and generate new
prose in their voice. The command line lives in `authorgen.cli`; every step of the pipeline is a
library module of its own (see DESIGN.md).
"""

__version__ = "0.1.0"
