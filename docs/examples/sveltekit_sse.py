"""produce() for sveltekit-sse's browser client, unmodified."""

import time

from flask import Flask

from flask_streaming import Streaming, produce

app = Flask(__name__)
Streaming(app)


# sveltekit-sse's source() POSTs by default: accept POST as well as GET.
@app.route("/prices", methods=["GET", "POST"])
def prices():
    def start(stream):
        for price in (101.5, 101.75, 102.0):
            # Name every event: sveltekit-sse's select("price") sees only
            # events with that `event:` field, and select("message") sees
            # none without one (pass event="message" if the page selects it).
            if stream.emit({"symbol": "ACME", "price": price}, event="price"):
                return None  # the client left
            time.sleep(0.05)
        stream.close()
        return None

    return produce(start)
