import { Component, type ComponentChildren } from "preact";
import { describeError, type ShownError } from "../errors.ts";

/** An error as the API said it (its sentence, then status and code), announced to screen readers. */
export function ErrorNote({ error, title }: { error: ShownError | null; title?: string }) {
  if (!error) return null;
  const tag = [error.status ? `HTTP ${error.status}` : "", error.code ?? ""].filter(Boolean).join(" · ");
  return (
    <div class="error" role="alert">
      {title && <strong>{title} </strong>}
      <span class="error-message">{error.message}</span>
      {tag && <span class="error-code">{tag}</span>}
    </div>
  );
}

interface BoundaryState {
  error: unknown;
}

/** Keeps a broken tab from blanking the page: it shows what went wrong and offers a retry. */
export class ErrorBoundary extends Component<{ children: ComponentChildren }, BoundaryState> {
  override state: BoundaryState = { error: null };

  override componentDidCatch(error: unknown): void {
    this.setState({ error });
  }

  override render() {
    if (this.state.error === null) return this.props.children;
    return (
      <div class="card">
        <ErrorNote title="This tab stopped working:" error={describeError(this.state.error)} />
        <button type="button" onClick={() => this.setState({ error: null })}>
          Try again
        </button>
      </div>
    );
  }
}
