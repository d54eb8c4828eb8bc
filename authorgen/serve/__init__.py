"""`authorgen serve`: a page to write in with a model, and an OpenAI-style completions API.

- `engine`: the models in memory and the batch each run's requests are decoded in;
- `api`: the HTTP app (Starlette): the page, `/v1/models`, `/v1/completions`, `/health`;
- `page.html`: the page, one file with its CSS and JavaScript, no build step.
"""
