from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app import db_session


class Base(DeclarativeBase):
    pass


Base.query = db_session.query_property()


class User(UserMixin, Base):
    __tablename__ = "user"
    id: Mapped[int] = mapped_column(primary_key=True)
    # authsvc's account number (X-Auth-User-Id) in the proxy mode, the ID token's `sub` (up to 255
    # characters) in the OIDC mode: it stays when the account is renamed.
    authsvc_id: Mapped[str] = mapped_column(String(255), index=True, unique=True)
    nickname: Mapped[str] = mapped_column(String(64), index=True, unique=True)
    email: Mapped[str | None] = mapped_column(String(120), index=True, unique=True)
    posts: Mapped[list["Post"]] = relationship(back_populates="author")

    def __repr__(self):
        return f"<User {self.nickname!r}>"


class Post(Base):
    __tablename__ = "post"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(140))
    timestamp: Mapped[datetime] = mapped_column(DateTime, default=lambda: datetime.now(UTC))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    author: Mapped[User] = relationship(back_populates="posts")

    def __repr__(self):
        return f"<Post {self.body!r}>"
