// A Map keeps insertion order, so re-inserting on a hit makes the first key
// the least recently used one: O(1) get/set/evict with no extra structure.

export interface Lru<V> {
  get(key: string): V | undefined;
  set(key: string, value: V): void;
  delete(key: string): void;
  readonly size: number;
  readonly capacity: number;
}

export function createLru<V>(capacity: number): Lru<V> {
  if (!Number.isInteger(capacity) || capacity < 0) throw new TypeError("cache capacity must be a non-negative integer");
  const map = new Map<string, V>();
  return {
    get(key) {
      const value = map.get(key);
      if (value !== undefined) {
        map.delete(key);
        map.set(key, value);
      }
      return value;
    },
    set(key, value) {
      if (capacity === 0) return;
      map.delete(key);
      map.set(key, value);
      if (map.size > capacity) map.delete(map.keys().next().value as string);
    },
    delete(key) {
      map.delete(key);
    },
    get size() {
      return map.size;
    },
    capacity,
  };
}
