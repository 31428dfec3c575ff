"""An HTTP translation server: ``seq2seq-kit serve`` (see ``docs/serving.md``).

:mod:`.app` builds the ASGI application (Starlette) with ``create_app``; :mod:`.requests`
validates request bodies; :mod:`.batcher` queues requests and decodes those that arrive
together in one batch, in one worker thread per model; :mod:`.decode` turns hypotheses
into the JSON of a response; :mod:`.memory` answers a decoding that runs out of memory in
the terms of its request; :mod:`.models` holds the served models and reloads them from
disk; :mod:`.protocol` gives uvicorn's connections their deadlines and limit. Importing
this package, or any module of it but :mod:`.app` and :mod:`.protocol`, imports no web
framework and no tensor library.
"""
