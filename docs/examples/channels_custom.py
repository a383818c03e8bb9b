"""A subscribe view of the app's own: the channels come from the user."""

from flask import Flask, request, session

from flask_streaming import Streaming, subscribe_response

app = Flask(__name__)
app.secret_key = "dev only"
app.config["STREAMING_ROUTES"] = "uploads,tus,client"  # no built-in /events
Streaming(app)


@app.get("/me/events")
def my_events():
    user = session.get("user", "guest")
    return subscribe_response(
        [f"user-{user}", "news"],
        last_event_id=request.headers.get("Last-Event-ID"),
    )
