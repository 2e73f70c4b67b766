"""The report `simulate` prints: the request, the HTTP status, the answer and the verdict."""

from app.simulate.send import Simulation

MAX_SHOWN_BODY_CHARS = 4000


def render(simulation: Simulation) -> str:
    """The report printed on stdout: the request, the HTTP status, the XML and the verdict."""
    webhook, verdict = simulation.webhook, simulation.verdict
    fields = webhook.fields
    lines = [
        f"request:  {webhook.method} {webhook.url}",
        f"call:     {fields.get('From')} -> {fields.get('To')}, call id {webhook.call_id}",
    ]
    if simulation.status_code is not None:
        lines.append(
            f"status:   HTTP {simulation.status_code} {simulation.content_type} "
            f"in {simulation.elapsed_seconds * 1000:.0f} ms"
        )
        body = simulation.body.strip()
        if len(body) > MAX_SHOWN_BODY_CHARS:
            body = body[:MAX_SHOWN_BODY_CHARS] + " ..."
        lines.append("answer:")
        lines.extend("  " + line for line in (body or "(empty)").splitlines())
    lines.append(f"verdict:  {verdict.name}: {verdict.explanation}")
    return "\n".join(lines)
