package streamtest

// murmur2 is Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils.murmur2),
// which its default partitioner and franz-go's kgo.StickyKeyPartitioner use
// for keyed records.
func murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	n := length / 4
	for i := 0; i < n; i++ {
		i4 := i * 4
		k := uint32(data[i4]) | uint32(data[i4+1])<<8 | uint32(data[i4+2])<<16 | uint32(data[i4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	rest := data[n*4:]
	switch len(rest) {
	case 3:
		h ^= uint32(rest[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(rest[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(rest[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// Partition returns the partition Kafka's default partitioner (and the
// runtime's) gives a record with key among partitions partitions:
// toPositive(murmur2(key)) % partitions. An empty, non-nil key is hashed
// like any other (franz-go's partitioner does the same; stream.Repartition
// writes keys that encode to no bytes that way). A nil key, which Kafka's
// producers spread over the partitions, goes to partition 0 in the driver.
func Partition(key []byte, partitions int) int32 {
	if key == nil || partitions <= 1 {
		return 0
	}
	return int32((uint32(murmur2(key)) & 0x7fffffff) % uint32(partitions))
}
