"""The app's helpers, one module per concern, between the Streamlit pages (``app.py``, ``views/``) and the library.

- ``settings``: the app's defaults (generation temperature and length, the compare limit), its environment switches
  (``PAMA_APP_MODEL``, ``PAMA_NO_DEMO``), ``UIError``;
- ``selection``: plot events → point ids, the comparison set, filters, labels and table rows;
- ``forms``: the Train form's widget values → a validated ``TrainConfig`` / ``SweepConfig``;
- ``exports``: a run's metrics as CSV and the run as JSON (``pama.jsonio``, as ``pama.report``);
- ``deletion``: what deleting a run removes, and the deletion;
- ``reads``: the shared store and typed reads of it through ``st.cache_data`` (records of ``pama.records``);
- ``hosting``: the thread-locked model host shared by sessions, exact mixtures and their quick evaluation;
- ``ballots``: blind-vote ballots (the Blind vote page): the draw's scope, drawing the next ballot, filling in
  responses, casting a vote, the scores table.

The pure modules (settings, selection, forms, exports, deletion) never import Streamlit and are tested without it;
``reads``, ``hosting`` and ``ballots`` use ``st.cache_data`` / ``st.cache_resource``. The layers inside the package
are in pyproject.toml (import-linter) and docs/ARCHITECTURE.md. Nothing is re-exported here: import the module.
"""
