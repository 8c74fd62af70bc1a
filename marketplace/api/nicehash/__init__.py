"""NiceHash's REST API v2 as a second door into the market (nicehash-rest.md).

``door.py`` answers HTTP requests on NiceHash's paths, ``routes.py`` maps each endpoint onto
the market's operations through the JSON-RPC door's shared path, ``render.py`` shows the
market's views as NiceHash's objects, ``units.py`` holds NiceHash's names, units and number
habits, ``errors.py`` its error codes, and ``wire.py`` the objects on the wire.
"""
