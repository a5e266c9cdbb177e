"""How the service is run, around the app `service.create_app()` builds.

    launcher       `python -m service` with no command (`make run`): gunicorn, and in local mode the emulator
    gunicorn_conf  gunicorn's settings and hooks (`gunicorn -c python:service.serving.gunicorn_conf`)
    production     `python -m service.serving.production` (`make run-production`): nginx in front of gunicorn
    nginx          nginx's configuration (nginx.conf.template, shipped here), its binary, when it starts
    tls            the mutual-TLS listener nginx serves, and local mode's certificate for it
    tls_front      `make run`'s nginx in front for mutual TLS only
    local_mode     the emulator as a process, for an endpoint-less run
    healthcheck    `python -m service.serving.healthcheck`: the image's HEALTHCHECK

Nothing in the app imports this package except `create_app` and the operator's commands, for
local mode.
"""
