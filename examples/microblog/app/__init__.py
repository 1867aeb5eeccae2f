from flask import Flask
from flask_authsvc import Authsvc
from flask_login import LoginManager
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session, sessionmaker
from werkzeug.middleware.proxy_fix import ProxyFix

app = Flask(__name__)
app.config.from_object("config")
app.config.from_prefixed_env("MICROBLOG")
if app.config["AUTHSVC_MODE"] == "proxy":
    # nginx in front: the URL the browser used (https, its host) is what authsvc sends users back to.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)

engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
db_session = scoped_session(sessionmaker(bind=engine))

lm = LoginManager(app)
authsvc = Authsvc(app, lm)


@app.teardown_appcontext
def remove_session(exception=None):
    db_session.remove()


from app import models, views  # noqa: F401  (the tutorial's circular import, kept)

models.Base.metadata.create_all(engine)
