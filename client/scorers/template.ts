import { ScorerError } from './errors.js';

/**
 * --scorer-template: how a (prompt, response) pair becomes one text for openrlhf and openai-logprobs (docs/scorers.md,
 * "Templates"). `{prompt}` and `{response}` are replaced in one pass, so a prompt that itself contains "{response}" is
 * left as it is.
 */
export const DEFAULT_TEMPLATE = '{prompt}{response}';

export interface Template {
  readonly text: string;
  /** The whole text for one item. */
  apply(prompt: string, response: string): string;
  /** The text before the response (template up to `{response}`, with `{prompt}` filled in). */
  promptPart(prompt: string): string;
}

function fill(template: string, prompt: string, response: string): string {
  return template.replace(/\{prompt\}|\{response\}/g, (m) => (m === '{prompt}' ? prompt : response));
}

/** Parses a template; one without both placeholders (or with `{response}` twice) is an error. */
export function parseTemplate(text: string, api: string): Template {
  const responses = text.split('{response}').length - 1;
  if (!text.includes('{prompt}') || responses === 0) {
    throw new ScorerError(`--scorer-template for ${api} must contain both {prompt} and {response}, got ${JSON.stringify(text)}`, { retryable: false });
  }
  if (responses > 1) {
    throw new ScorerError(`--scorer-template for ${api} must contain {response} once, got ${JSON.stringify(text)}`, { retryable: false });
  }
  const before = text.slice(0, text.indexOf('{response}'));
  return {
    text,
    apply: (prompt, response) => fill(text, prompt, response),
    promptPart: (prompt) => fill(before, prompt, ''),
  };
}
