// The latency run's load generator (bench_e2e.py): produces "key<TAB>value" lines read from
// stdin, each as it arrives, with the Java client. Run from source (JEP 330), no build step:
//
//     java -cp '.cache/kafka/libs/*' benchmarks/LineProducer.java BOOTSTRAP TOPIC [WARMUP_TOPIC N]
//
// Why not kafka-python in the benchmark process: at 5k events/s its send path took ~0.4 of one
// of this machine's two cores, which the service under test then lacked. The Java client sends
// the same records for a few percent of a core. Keyed with the default partitioner (murmur2),
// as the Python client is: a customer's events stay in one partition and in order.
// Prints "ready" once connected, and "sent N" once stdin is closed and every record was acknowledged.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class LineProducer {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("acks", "all");
        props.put("linger.ms", "5"); // as make_producer: the generator adds the same batching delay
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        String topic = args[1];
        AtomicReference<Exception> failed = new AtomicReference<>();
        long sent = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props);
             BufferedReader in = new BufferedReader(
                     new InputStreamReader(System.in, StandardCharsets.UTF_8), 1 << 16)) {
            producer.partitionsFor(topic); // metadata and connection before the first timed record
            if (args.length >= 4) {
                // Warm the send path up on a scratch topic: the JIT compiling it during the first
                // timed seconds took most of a core from the service under test.
                byte[] filler = new byte[300];
                for (int i = 0; i < Integer.parseInt(args[3]); i++) {
                    producer.send(new ProducerRecord<>(args[2], ("w" + i).getBytes(StandardCharsets.UTF_8), filler));
                }
                producer.flush();
            }
            System.out.println("ready");
            System.out.flush();
            String line;
            while ((line = in.readLine()) != null && failed.get() == null) {
                int tab = line.indexOf('\t');
                if (tab < 0) {
                    throw new IllegalArgumentException("line without a tab: " + line);
                }
                byte[] key = line.substring(0, tab).getBytes(StandardCharsets.UTF_8);
                byte[] value = line.substring(tab + 1).getBytes(StandardCharsets.UTF_8);
                producer.send(new ProducerRecord<>(topic, key, value), (md, e) -> {
                    if (e != null) {
                        failed.compareAndSet(null, e);
                    }
                });
                sent++;
            }
            producer.flush();
        }
        if (failed.get() != null) {
            throw failed.get();
        }
        System.out.println("sent " + sent);
    }
}
