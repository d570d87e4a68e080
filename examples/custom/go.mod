module example.com/pier-custom

go 1.26.0

require github.com/pierproxy/pier v0.0.0

require (
	go.yaml.in/yaml/v4 v4.0.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/pierproxy/pier => ../..
