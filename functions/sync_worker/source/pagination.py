"""How to get the next page: by page number, by a cursor token, or by a `next` link.

A paginator turns (request made, response got) into the next request, or None at the end, so the
source's fetch loops stay identical for every vendor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin

import requests

from functions.sync_worker.source.config import (
    CursorPagination,
    LinkPagination,
    NoPagination,
    PageNumberPagination,
    PaginationConfig,
)
from functions.sync_worker.source.mapping import compile_path


@dataclass(frozen=True)
class PageRequest:
    url: str
    params: dict[str, str]
    page: int = 0  # page number, for page-number pagination


class Paginator:
    def __init__(self, cfg: PaginationConfig) -> None:
        self.cfg = cfg
        self._next = (
            compile_path(cfg.next) if isinstance(cfg, (CursorPagination, LinkPagination)) and cfg.next else None
        )
        self._total_pages = (
            compile_path(cfg.total_pages) if isinstance(cfg, PageNumberPagination) and cfg.total_pages else None
        )

    def first(self, url: str, params: dict[str, str]) -> PageRequest:
        if isinstance(self.cfg, PageNumberPagination):
            return PageRequest(url, {**params, self.cfg.page_param: str(self.cfg.start)}, self.cfg.start)
        return PageRequest(url, params)

    def next(
        self, req: PageRequest, body: Any, resp: requests.Response, items: int, page_size: int
    ) -> PageRequest | None:
        cfg = self.cfg
        if isinstance(cfg, NoPagination):
            return None
        if isinstance(cfg, PageNumberPagination):
            if items == 0:
                return None
            if self._total_pages is not None:
                total = self._total_pages(body)
                if isinstance(total, int) and req.page - cfg.start + 1 >= total:
                    return None
            elif items < page_size:
                return None
            page = req.page + 1
            return replace(req, params={**req.params, cfg.page_param: str(page)}, page=page)
        if isinstance(cfg, CursorPagination):
            token = self._next(body) if self._next else None
            if not token:
                return None
            params = dict(req.params) if cfg.keep_params else {}
            params[cfg.param] = str(token)
            return replace(req, params=params)
        # Link: the next URL carries every parameter itself.
        link = self._next(body) if self._next else resp.links.get("next", {}).get("url")
        if not link:
            return None
        return PageRequest(urljoin(resp.url, str(link)), {})
