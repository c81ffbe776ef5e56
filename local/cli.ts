/** A command-line option that must be a whole number in min..max (the local tools' CLIs). */
export function intOption(name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(n) || n < min || n > max)
    throw new Error(`--${name} must be an integer ${min}..${max}, got "${raw}"`);
  return n;
}
