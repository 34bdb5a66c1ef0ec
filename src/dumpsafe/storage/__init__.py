"""Stores by name: the factory the service uses. Backends import their SDKs lazily."""

from __future__ import annotations

from dumpsafe.config import Config, GCSStoreConfig, LocalStoreConfig, S3StoreConfig
from dumpsafe.errors import UnknownNameError
from dumpsafe.storage.base import ObjectInfo, Store


def open_store(config: Config, name: str) -> Store:
    try:
        sc = config.stores[name]
    except KeyError:
        known = ", ".join(sorted(config.stores)) or "none"
        raise UnknownNameError(f"unknown store {name!r} (configured stores: {known})") from None
    if isinstance(sc, LocalStoreConfig):
        from dumpsafe.storage.local import LocalStore

        return LocalStore(name, sc.path)
    if isinstance(sc, S3StoreConfig):
        from dumpsafe.storage.s3 import S3Store

        return S3Store(name, sc)
    if isinstance(sc, GCSStoreConfig):
        from dumpsafe.storage.gcs import GCSStore

        return GCSStore(name, sc)
    raise UnknownNameError(f"store {name!r} has an unsupported kind")


__all__ = ["open_store", "Store", "ObjectInfo"]
