fn main() { println!("berth"); }
