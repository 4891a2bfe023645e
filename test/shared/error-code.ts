/**
 * The error code `f` throws ('none' when it returns): how the bad-binding tests list what each
 * binding got. A returned Dispatch (anything with destroy) is destroyed.
 */
export async function errorCode(f: () => Promise<unknown>): Promise<string> {
  try {
    const made = await f();
    (made as { destroy?: () => void } | undefined)?.destroy?.();
    return 'none';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}
