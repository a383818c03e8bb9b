"""Upload a file with tuspy (``pip install tuspy``), resumable."""

import os

from tusclient import client


def upload(path: str, server: str = "http://127.0.0.1:8000") -> str:
    tus = client.TusClient(f"{server}/streaming/tus/")
    with open(path, "rb") as f:
        uploader = tus.uploader(
            file_stream=f,
            chunk_size=8 * 1024 * 1024,  # 8 MiB per PATCH
            metadata={"filename": os.path.basename(path)},
            upload_checksum=True,  # Upload-Checksum: sha1 on every PATCH
        )
        uploader.upload()  # on failure, call upload() again: it resumes at the server's offset
    return uploader.url
