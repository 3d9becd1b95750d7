import textwrap

import pytest

from reactors.errors import RoutesFileError
from reactors.retry import RetryPolicy
from reactors.routes import AppriseSpec, LogSpec, WebhookSpec, default_routes, parse_routes

GOOD = textwrap.dedent("""\
    handlers:
      ops-hook:
        type: webhook
        url: https://hooks.example/clickstream
        secret: s3cret
        retry: {max_attempts: 3, max_elapsed_s: 20}
      slack:
        type: apprise
        url: json://127.0.0.1:9/x
        title: "{rule} on {subject}"
      audit:
        type: log
    routes:
      page_views_threshold: [ops-hook, slack, audit]
      "*": [audit]
    """)


def test_a_rule_gets_its_handlers_then_those_of_star_each_once():
    routes = parse_routes(GOOD, "routes.yaml")
    assert routes.handlers_for("page_views_threshold") == ["ops-hook", "slack", "audit"]
    assert routes.handlers_for("another_rule") == ["audit"]
    hook = routes.handlers["ops-hook"]
    assert isinstance(hook, WebhookSpec) and hook.secret == "s3cret" and hook.timeout_s == 5
    assert hook.retry.policy() == RetryPolicy(max_attempts=3, max_elapsed_s=20, base_delay_s=0.5, max_delay_s=30)
    assert isinstance(routes.handlers["slack"], AppriseSpec)
    assert routes.lines == {"ops-hook": 2, "slack": 7, "audit": 11}


def test_default_routes_log_everything_and_post_to_the_webhook_if_set():
    assert default_routes(None, None, 5).handlers_for("any") == ["log"]
    routes = default_routes("http://127.0.0.1:1/hook", "k", 2.5)
    assert routes.handlers_for("any") == ["log", "webhook"]
    assert isinstance(routes.handlers["log"], LogSpec)
    assert routes.handlers["webhook"].secret == "k" and routes.handlers["webhook"].timeout_s == 2.5


def error_of(text: str) -> RoutesFileError:
    with pytest.raises(RoutesFileError) as info:
        parse_routes(textwrap.dedent(text), "routes.yaml")
    return info.value


@pytest.mark.parametrize("text, line, reason", [
    # a route naming a handler that is not defined: the line of that list item
    ("""\
     handlers:
       a: {type: log}
     routes:
       r:
         - a
         - b
     """, 6, "routes.r: unknown handler 'b'"),
    # an unknown handler type
    ("""\
     handlers:
       a:
         type: pager
     routes: {}
     """, 2, "handlers.a: Input tag 'pager' found using 'type' does not match"),
    # a field the handler does not have (a typo)
    ("""\
     handlers:
       hook:
         type: webhook
         url: http://h/x
         secrte: abc
     routes: {}
     """, 5, "handlers.hook.webhook.secrte: Extra inputs are not permitted"),
    # a missing required field: the line of the handler
    ("""\
     handlers:
       hook:
         type: webhook
         timeout_s: 3
     routes: {}
     """, 2, "handlers.hook.webhook.url: Field required"),
    ("""\
     handlers:
       hook: {type: webhook, url: ftp://h/x}
     routes: {}
     """, 2, "must start with http:// or https://"),
    ("""\
     handlers:
       n:
         type: apprise
         url: json://h/x
         body: "{subjekt} fired"
     routes: {}
     """, 5, "unknown reaction field(s) ['subjekt']"),
    ("""\
     handlers:
       p: {type: python}
     routes: {}
     """, 2, "give exactly one of 'entry_point'"),
    ("""\
     handlers:
       a: {type: log}
       a: {type: log}
     routes: {}
     """, 3, "'a' appears twice"),
    ("""\
     handlers:
       a: {type: log}
     routes:
       r: [a
     """, 5, "not valid YAML"),
    ("""\
     handlers:
       "a b": {type: log}
     routes: {}
     """, 2, "handler name 'a b'"),
    ("""\
     handlers:
       a:
         type: log
         retry: {max_attempts: 0}
     routes: {}
     """, 4, "retry.max_attempts: Input should be greater than or equal to 1"),
    ("- just a list\n", 1, "expected a mapping"),
    ("handlers: {}\n", 1, "routes: Field required"),
])
def test_errors_name_the_file_line_and_reason(text, line, reason):
    error = error_of(text)
    assert error.line == line, str(error)
    assert reason in error.reason, str(error)
    assert str(error).startswith(f"routes.yaml:{line}: ")
