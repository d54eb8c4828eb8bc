"""authorgen: write like an author.

Fetch an author's public-domain works, train a recurrent network or a transformer on them and
generate new prose in their voice. Each step of the pipeline is a library module of its own:
`sources` and `clean` (fetch), `corpus`, `tokenizer`, `data` and `prepare` (the text as token
ids), `models`, `train` and `trainer` (training), `sample` (generation), `evaluate` and
`compare` (judging runs), `checkpoint` (the run folders). The command line in `authorgen.cli`
only parses, calls one of them and renders.
"""

__version__ = "0.1.0"
