from flask import abort, g, render_template
from flask_login import current_user, login_required

from app import app, authsvc, db_session
from app.models import User


@authsvc.user_loader
def load_user(identity):
    user = User.query.filter_by(authsvc_id=identity.user_id).first()
    if user is None:
        user = User(authsvc_id=identity.user_id, nickname=identity.username)
        db_session.add(user)
        db_session.commit()
    return user


@app.before_request
def before_request():
    g.user = current_user


@app.route("/")
@app.route("/index")
@login_required
def index():
    user = g.user
    posts = [
        {"author": {"nickname": "John"}, "body": "Beautiful day in Portland!"},
        {"author": {"nickname": "Susan"}, "body": "The Avengers movie was so cool!"},
    ]
    return render_template("index.html", title="Home", user=user, posts=posts)


@app.route("/user/<nickname>")
@login_required
def user(nickname):
    user = User.query.filter_by(nickname=nickname).first()
    if user is None:
        abort(404)
    return render_template("user.html", user=user, posts=user.posts)


# Beyond the tutorial's part V: pages that ask for more than @login_required.
@app.route("/edit")
@authsvc.required(mfa=True)   # a sign-in with a second factor (else a page offering the step-up)
def edit():
    return render_template("page.html", title="Edit your profile",
                           text="You signed in with a second factor, so you may edit your profile.")


@app.route("/moderation")
@authsvc.required(groups=["moderators"])   # authsvc's group (else 403)
def moderation():
    return render_template("page.html", title="Moderation", text="Posts waiting for a moderator: none.")
